-- The flows explorer's port filter: the service port (the remote port of an outbound flow, the local
-- port of an inbound one, as alerts name it) over a time range. With this index a rare port is found
-- without reading every row of the range (a common one, like 53, is found as soon by reading newest
-- first through flows_window_order; the planner picks). Service ports are few and well known, so the
-- index grows at a few places, unlike one on the ephemeral ports.
CREATE INDEX flows_service_port ON flows ((CASE WHEN direction = 'inbound' THEN local_port ELSE remote_port END), window_start);
