-- Schema of the sample's orders and inventory services (one database, schema "shop").
-- `npm run sample` applies it at every start; it resets the demo stock.
CREATE SCHEMA IF NOT EXISTS shop;

CREATE TABLE IF NOT EXISTS shop.orders (
  id           uuid PRIMARY KEY,
  tenant_id    text NOT NULL,
  user_id      text NOT NULL,
  sku          text NOT NULL,
  quantity     integer NOT NULL CHECK (quantity > 0),
  status       text NOT NULL CHECK (status IN ('pending', 'confirmed', 'rejected')),
  amount_cents integer,
  payment_id   uuid,
  reason       text,
  created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS shop.stock (
  sku         text PRIMARY KEY,
  available   integer NOT NULL CHECK (available >= 0),
  price_cents integer NOT NULL CHECK (price_cents > 0)
);

INSERT INTO shop.stock (sku, available, price_cents) VALUES
  ('sku-espresso-beans', 500, 1450),
  ('sku-grinder', 20, 8900),
  ('sku-milk-jug', 100, 1200)
ON CONFLICT (sku) DO UPDATE SET available = EXCLUDED.available, price_cents = EXCLUDED.price_cents;
