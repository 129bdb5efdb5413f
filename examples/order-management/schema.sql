-- The order management system's table that its daily cleanup touches, as Prisma creates it on
-- PostgreSQL: the ActivityLog model mapped to activity_logs, fields kept in camelCase (quoted),
-- ids made by cuid(), DateTime as timestamp(3) in UTC. The seed names no table: check these
-- names against the application's schema.prisma first.
CREATE TABLE activity_logs (
    id          TEXT PRIMARY KEY,
    "userId"    TEXT,
    "orderId"   TEXT,
    action      TEXT NOT NULL,         -- ORDER_ASSIGNED, STATUS_CHANGED, ...
    details     JSONB,
    "timestamp" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);
-- The cleanup's inner SELECT finds the old rows through this index.
CREATE INDEX activity_logs_timestamp_idx ON activity_logs ("timestamp");
