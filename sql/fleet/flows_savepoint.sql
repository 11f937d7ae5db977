-- Before the optimistic COPY of a batch's flows: a point to return to if a window was sent before.
SAVEPOINT flows_copy;
