-- The flows of the batch are in.
RELEASE SAVEPOINT flows_copy;
