-- Drop the flows partitions whose day ended at or before the given epoch second (retention).
SELECT fleet_drop_flow_partitions_before(%(before_epoch)s);
