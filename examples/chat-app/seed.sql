-- Data for trying the jobs out (and for the end-to-end test): rows the conversation cleanup
-- must deactivate and rows it must leave alone. Times are UTC (UTC_TIMESTAMP(3), like the
-- columns, whatever the session's time_zone), relative to now.
INSERT INTO legacy_conversation_states (phone_number, is_active, created_at, updated_at) VALUES
    -- active and created over 10 minutes ago: deactivated
    ('+14155550101', TRUE,  UTC_TIMESTAMP(3) - INTERVAL 30 MINUTE, UTC_TIMESTAMP(3) - INTERVAL 30 MINUTE),
    ('+14155550102', TRUE,  UTC_TIMESTAMP(3) - INTERVAL 11 MINUTE, UTC_TIMESTAMP(3) - INTERVAL 11 MINUTE),
    -- active and recent: kept active
    ('+14155550103', TRUE,  UTC_TIMESTAMP(3) - INTERVAL 8 MINUTE,  UTC_TIMESTAMP(3) - INTERVAL 8 MINUTE),
    ('+14155550104', TRUE,  UTC_TIMESTAMP(3) - INTERVAL 1 MINUTE,  UTC_TIMESTAMP(3) - INTERVAL 1 MINUTE),
    -- already inactive: left alone (its updated_at is not touched)
    ('+14155550105', FALSE, UTC_TIMESTAMP(3) - INTERVAL 2 DAY,     UTC_TIMESTAMP(3) - INTERVAL 2 DAY);
