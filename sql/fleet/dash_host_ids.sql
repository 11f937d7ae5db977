-- Host ids by exact identifier or hostname (the flows explorer's host filter).
SELECT id FROM hosts WHERE host_identifier = %(host)s OR hostname = %(host)s
