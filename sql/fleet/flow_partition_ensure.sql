-- Create the flows partition of one UTC day if it does not exist.
SELECT fleet_ensure_flow_partition(%(day)s::date);
