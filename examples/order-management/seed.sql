-- Data for trying the daily cleanup out (and for the end-to-end test): activity logs it must
-- delete and logs it must keep. Times are relative to now, in UTC as Prisma stores them.
SET TIME ZONE 'UTC';

-- A backlog of 2500 logs from 31 days ago and older: more than two rounds of 1000.
INSERT INTO activity_logs (id, "userId", "orderId", action, "timestamp")
SELECT 'bulk-' || g, 'agent-' || (g % 7), 'order-' || g, 'ORDER_ASSIGNED',
       now() - interval '31 days' - g * interval '1 minute'
  FROM generate_series(1, 2500) AS g;

INSERT INTO activity_logs (id, "userId", "orderId", action, details, "timestamp") VALUES
    ('old-status',  'agent-1', 'order-9001', 'STATUS_CHANGED', '{"from": "SHIPPED", "to": "DELIVERED"}',
        now() - interval '45 days'),                        -- deleted
    ('just-over',   'agent-2', 'order-9002', 'ORDER_ASSIGNED', NULL,
        now() - interval '30 days 1 minute'),               -- just over 30 days: deleted
    ('just-under',  'agent-2', 'order-9003', 'ORDER_ASSIGNED', NULL,
        now() - interval '29 days 23 hours'),               -- just under: kept
    ('yesterday',   'agent-3', 'order-9004', 'STATUS_CHANGED', '{"from": "CONFIRMED", "to": "SHIPPED"}',
        now() - interval '1 day'),                          -- kept
    ('this-hour',   NULL,      'order-9005', 'ORDER_SYNCED',   '{"source": "ECOMANAGER"}',
        now() - interval '5 minutes');                      -- kept
