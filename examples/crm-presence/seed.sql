-- Rows for each crm-presence job to act on, and rows it must leave alone. Times are relative
-- to now(), so the data means the same whenever it is loaded. Every row starts with
-- updated_at a day ago, so that what a job touched shows.

-- mark-users-offline: ada (heartbeat 10 minutes ago) and cy (logged in 20 minutes ago, never
-- sent a heartbeat) go offline; ben (heartbeat a minute ago, logged in hours ago) and eli
-- (3 minutes ago) stay online; dee is already offline; fay never logged in.
INSERT INTO users (tenant_id, email, first_name, last_name, role, metadata, updated_at) VALUES
    ('acme-crm', 'ada@example.com', 'Ada', 'Stale', 'admin',
     jsonb_build_object('account_status', 'active', 'live_status', 'online',
                        'last_login', now() - interval '2 hours',
                        'last_seen', now() - interval '10 minutes'),
     now() - interval '1 day'),
    ('acme-crm', 'ben@example.com', 'Ben', 'Active', 'user',
     jsonb_build_object('account_status', 'active', 'live_status', 'online',
                        'last_login', now() - interval '3 hours',
                        'last_seen', now() - interval '1 minute'),
     now() - interval '1 day'),
    ('acme-crm', 'cy@example.com', 'Cy', 'Closed-Tab', 'user',
     jsonb_build_object('account_status', 'active', 'live_status', 'online',
                        'last_login', now() - interval '20 minutes'),
     now() - interval '1 day'),
    ('acme-crm', 'dee@example.com', 'Dee', 'Away', 'user',
     jsonb_build_object('account_status', 'active', 'live_status', 'offline',
                        'last_login', now() - interval '2 days',
                        'last_seen', now() - interval '2 days'),
     now() - interval '1 day'),
    ('acme-crm', 'eli@example.com', 'Eli', 'Recent', 'user',
     jsonb_build_object('account_status', 'active', 'live_status', 'online',
                        'last_login', now() - interval '40 minutes',
                        'last_seen', now() - interval '3 minutes'),
     now() - interval '1 day'),
    ('acme-crm', 'fay@example.com', 'Fay', 'Invited', 'user', '{}',
     now() - interval '1 day');

-- mark-users-offline: frank (heartbeat 30 minutes ago) goes offline, gina (30 seconds ago)
-- stays online, sam (another tenant) is already offline. The sync job matches assignees to
-- these by e-mail within their tenant.
INSERT INTO employees (tenant_id, email, first_name, last_name, role, metadata, updated_at) VALUES
    ('acme-crm', 'frank@acme.example', 'Frank', 'Castle', 'sales',
     jsonb_build_object('live_status', 'online',
                        'last_seen', now() - interval '30 minutes'),
     now() - interval '1 day'),
    ('acme-crm', 'gina@acme.example', 'Gina', 'Torres', 'sales',
     jsonb_build_object('live_status', 'online',
                        'last_seen', now() - interval '30 seconds'),
     now() - interval '1 day'),
    ('beta-crm', 'sam@beta.example', 'Sam', 'Beta', 'support',
     jsonb_build_object('live_status', 'offline',
                        'last_seen', now() - interval '3 days'),
     now() - interval '1 day');

-- sync-denormalized-fields: Acme was renamed (its copies still say "Acme Inc"); Globex's are
-- right.
INSERT INTO accounts (tenant_id, name, industry, updated_at) VALUES
    ('acme-crm', 'Acme Corporation', 'manufacturing', now() - interval '1 day'),
    ('acme-crm', 'Globex', 'energy', now() - interval '1 day');

-- Carla: stale account name, no assignee name yet (2 updates). Dan: right account name, and
-- an assignee who is no employee (left alone). Eva: no account, no assignee.
INSERT INTO contacts (tenant_id, first_name, last_name, email, account_id, account_name,
                      assigned_to, assigned_to_name, updated_at) VALUES
    ('acme-crm', 'Carla', 'Client', 'carla@client.example',
     (SELECT id FROM accounts WHERE name = 'Acme Corporation'), 'Acme Inc',
     'frank@acme.example', NULL, now() - interval '1 day'),
    ('acme-crm', 'Dan', 'Doe', 'dan@client.example',
     (SELECT id FROM accounts WHERE name = 'Globex'), 'Globex',
     'former.rep@acme.example', 'Former Rep', now() - interval '1 day'),
    ('acme-crm', 'Eva', 'Solo', 'eva@client.example', NULL, NULL, NULL, NULL,
     now() - interval '1 day');

-- Lou: no account name yet, an outdated assignee name (2 updates).
INSERT INTO leads (tenant_id, first_name, last_name, email, company, account_id, account_name,
                   assigned_to, assigned_to_name, updated_at) VALUES
    ('acme-crm', 'Lou', 'Lead', 'lou@lead.example', 'Acme Corporation',
     (SELECT id FROM accounts WHERE name = 'Acme Corporation'), NULL,
     'gina@acme.example', 'Gina', now() - interval '1 day');

-- Acme renewal: stale account name, right assignee name (1 update). Globex pilot: all right.
INSERT INTO opportunities (tenant_id, name, amount, stage, account_id, account_name,
                           assigned_to, assigned_to_name, updated_at) VALUES
    ('acme-crm', 'Acme renewal', 12000.00, 'negotiation',
     (SELECT id FROM accounts WHERE name = 'Acme Corporation'), 'Acme Inc',
     'frank@acme.example', 'Frank Castle', now() - interval '1 day'),
    ('acme-crm', 'Globex pilot', 4500.50, 'proposal',
     (SELECT id FROM accounts WHERE name = 'Globex'), 'Globex',
     'gina@acme.example', 'Gina Torres', now() - interval '1 day');

-- clean-old-activities: the three older than 365 days go; the 364-day-old review and the
-- recent ones stay. sync-denormalized-fields: the follow-up call gets Gina's name (1 update);
-- the demo is assigned to an employee of another tenant (left alone).
INSERT INTO activities (tenant_id, type, subject, assigned_to, assigned_to_name, created_at,
                        updated_at) VALUES
    ('acme-crm', 'task', 'Old task', NULL, NULL,
     now() - interval '2 years', now() - interval '2 years'),
    ('acme-crm', 'call', 'Kick-off call', 'frank@acme.example', 'Frank Castle',
     now() - interval '400 days', now() - interval '400 days'),
    ('acme-crm', 'email', 'Renewal e-mail', 'frank@acme.example', 'Frank Castle',
     now() - interval '366 days', now() - interval '366 days'),
    ('acme-crm', 'meeting', 'Quarterly review', 'frank@acme.example', 'Frank Castle',
     now() - interval '364 days', now() - interval '1 day'),
    ('acme-crm', 'call', 'Follow-up call', 'gina@acme.example', NULL,
     now() - interval '2 days', now() - interval '1 day'),
    ('acme-crm', 'meeting', 'Demo meeting', 'sam@beta.example', NULL,
     now() - interval '1 hour', now() - interval '1 day');
