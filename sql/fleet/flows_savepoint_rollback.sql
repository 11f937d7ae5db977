-- The optimistic COPY met a flow window already stored: undo it (the batch record stays).
ROLLBACK TO SAVEPOINT flows_copy;
