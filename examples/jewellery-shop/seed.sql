-- Data for trying the jobs out (and for the end-to-end test): for each job, rows it must act
-- on and rows it must leave alone. Times are relative to now, in UTC as Prisma stores them.
INSERT INTO users (id, email, is_verified, created_at) VALUES
    (1, 'asha@example.com',  true,  now() - interval '90 days'),
    (2, 'ravi@example.com',  false, now() - interval '40 days'), -- never verified: deleted
    (3, 'meera@example.com', false, now() - interval '5 days');  -- still has time: kept
SELECT setval('users_id_seq', 3);

INSERT INTO products (id, name, stock) VALUES
    (1, 'Gold ring', 2),           -- low
    (2, 'Pearl necklace', 12),
    (3, 'Silver earrings', 4);     -- low
SELECT setval('products_id_seq', 3);

INSERT INTO inventory_locks (product_id, quantity, expires_at) VALUES
    (1, 1, now() - interval '10 minutes'),  -- expired
    (2, 2, now() - interval '1 minute'),    -- expired
    (3, 1, now() + interval '10 minutes');  -- live: a checkout in progress

-- "Today" is the shop's day, in Asia/Kolkata.
INSERT INTO orders (id, user_id, status, total_amount, created_at) VALUES
    (1, 1, 'PROCESSING', 1000.50, (date_trunc('day', now() AT TIME ZONE 'Asia/Kolkata') AT TIME ZONE 'Asia/Kolkata') AT TIME ZONE 'UTC' + interval '1 second'),
    (2, 1, 'SHIPPED',     499.50, (date_trunc('day', now() AT TIME ZONE 'Asia/Kolkata') AT TIME ZONE 'Asia/Kolkata') AT TIME ZONE 'UTC' + interval '2 seconds'),
    (3, 1, 'PENDING',     300.00, (date_trunc('day', now() AT TIME ZONE 'Asia/Kolkata') AT TIME ZONE 'Asia/Kolkata') AT TIME ZONE 'UTC' + interval '3 seconds'),
    (4, 1, 'DELIVERED',   700.00, (date_trunc('day', now() AT TIME ZONE 'Asia/Kolkata') AT TIME ZONE 'Asia/Kolkata') AT TIME ZONE 'UTC' - interval '1 hour');
SELECT setval('orders_id_seq', 4);

INSERT INTO payments (order_id, transaction_id, status, created_at) VALUES
    (3, 'order_stale1', 'PENDING', now() - interval '25 minutes'), -- webhook never came
    (2, 'order_fresh2', 'PENDING', now() - interval '2 minutes'),
    (1, 'order_paid01', 'SUCCESS', now() - interval '1 hour');

INSERT INTO notifications (user_id, message, is_read, created_at) VALUES
    (1, 'Order shipped',    true,  now() - interval '45 days'), -- read and old: deleted
    (1, 'Order delivered',  false, now() - interval '45 days'), -- unread: kept
    (1, 'Order confirmed',  true,  now() - interval '3 days');  -- recent: kept

INSERT INTO password_resets (user_id, token, expires_at) VALUES
    (1, 'expired-token', now() - interval '1 hour'),
    (3, 'live-token',    now() + interval '50 minutes');
