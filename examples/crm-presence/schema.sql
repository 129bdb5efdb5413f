-- The CRM's tables that the crm-presence jobs touch (PostgreSQL 13 or later), as the CRM's
-- backend has them: UUID keys, the tenant as text, free-form JSONB `metadata`. Only the columns
-- the jobs read or write, plus a few to recognise a row by.

-- People who log in. Presence lives in metadata: live_status ('online' / 'offline'),
-- last_seen (the heartbeat, every 60 s), last_login, account_status; times as ISO 8601 text.
CREATE TABLE users (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   text,
    email       text NOT NULL UNIQUE,
    first_name  text,
    last_name   text,
    role        text NOT NULL DEFAULT 'user',
    metadata    jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- A tenant's staff: the same presence metadata as users; records are assigned to them by
-- e-mail.
CREATE TABLE employees (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   text NOT NULL,
    email       text NOT NULL,
    first_name  text,
    last_name   text,
    role        text,
    metadata    jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, email)
);

CREATE TABLE accounts (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   text NOT NULL,
    name        text NOT NULL,
    industry    text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- account_name and assigned_to_name are denormalised copies, for lists that show them.
CREATE TABLE contacts (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        text NOT NULL,
    first_name       text,
    last_name        text,
    email            text,
    account_id       uuid REFERENCES accounts (id) ON DELETE SET NULL,
    account_name     text,
    assigned_to      text,
    assigned_to_name text,
    metadata         jsonb NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE leads (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        text NOT NULL,
    first_name       text,
    last_name        text,
    email            text,
    company          text,
    status           text NOT NULL DEFAULT 'new',
    account_id       uuid REFERENCES accounts (id) ON DELETE SET NULL,
    account_name     text,
    assigned_to      text,
    assigned_to_name text,
    metadata         jsonb NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE opportunities (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        text NOT NULL,
    name             text NOT NULL,
    amount           numeric(15, 2),
    stage            text NOT NULL DEFAULT 'prospecting',
    account_id       uuid REFERENCES accounts (id) ON DELETE SET NULL,
    account_name     text,
    assigned_to      text,
    assigned_to_name text,
    metadata         jsonb NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Calls, e-mails, meetings, tasks logged against records.
CREATE TABLE activities (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        text NOT NULL,
    type             text NOT NULL,
    subject          text,
    body             text,
    related_id       uuid,
    assigned_to      text,
    assigned_to_name text,
    metadata         jsonb NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- The retention cleanup finds old activities by age.
CREATE INDEX activities_created_at ON activities (created_at);
