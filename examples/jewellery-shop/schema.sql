-- The jewellery shop's tables that its background jobs touch, as Prisma creates them on
-- PostgreSQL (models mapped to plural snake_case; DateTime is timestamp(3), in UTC).
CREATE TABLE users (
    id          SERIAL PRIMARY KEY,
    email       TEXT NOT NULL UNIQUE,
    is_verified BOOLEAN NOT NULL DEFAULT false,
    created_at  TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE products (
    id    SERIAL PRIMARY KEY,
    name  TEXT NOT NULL,
    stock INTEGER NOT NULL
);

-- Stock held for a checkout in progress, until it expires.
CREATE TABLE inventory_locks (
    id         SERIAL PRIMARY KEY,
    product_id INTEGER NOT NULL REFERENCES products (id),
    quantity   INTEGER NOT NULL,
    expires_at TIMESTAMP(3) NOT NULL
);
CREATE INDEX inventory_locks_expires_at ON inventory_locks (expires_at);

CREATE TABLE orders (
    id           SERIAL PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    status       TEXT NOT NULL, -- PENDING, PROCESSING, SHIPPED, DELIVERED, CANCELLED
    total_amount NUMERIC(12, 2) NOT NULL,
    created_at   TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE payments (
    id             SERIAL PRIMARY KEY,
    order_id       INTEGER NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    transaction_id TEXT NOT NULL, -- Razorpay's order id
    status         TEXT NOT NULL, -- PENDING, SUCCESS, FAILED
    created_at     TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE notifications (
    id         SERIAL PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    message    TEXT NOT NULL,
    is_read    BOOLEAN NOT NULL DEFAULT false,
    created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE password_resets (
    id         SERIAL PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token      TEXT NOT NULL UNIQUE,
    expires_at TIMESTAMP(3) NOT NULL
);
