-- The chat app's tables that its cron jobs touch, on MariaDB (or MySQL 8.0.13+): the Mongoose
-- model LegacyConversationState (collection legacyconversationstates) as a table in plural
-- snake_case. Mongoose's timestamps (createdAt, updatedAt) are UTC instants; here they are
-- DATETIME(3) columns holding UTC (not TIMESTAMP, which converts through the session's
-- time_zone), so every comparison is against UTC_TIMESTAMP(3).
CREATE TABLE legacy_conversation_states (
    id           BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, -- Mongo's _id
    phone_number VARCHAR(32) NOT NULL,       -- the WhatsApp user the conversation is with
    is_active    BOOLEAN NOT NULL DEFAULT TRUE,
    created_at   DATETIME(3) NOT NULL DEFAULT (UTC_TIMESTAMP(3)),
    updated_at   DATETIME(3) NOT NULL DEFAULT (UTC_TIMESTAMP(3)),
    -- The cleanup's filter: active states created before a moment.
    KEY legacy_conversation_states_active_created (is_active, created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
