-- The search reads one officer-day of live bookings at a time. The exclusion
-- constraint's GiST index cannot use `officer_id = ANY(...)` as an index
-- condition, so this btree gives each officer one index range per day.
CREATE INDEX IF NOT EXISTS booking_officer_start ON booking (officer_id, lower(during)) INCLUDE (during) WHERE live;
