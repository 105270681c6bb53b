-- Nexmark q2, selection: the bids of a few auctions.
-- tables: bid
-- streaming:
SELECT auction, price FROM bid WHERE auction % 123 = 0
-- batch:
SELECT auction, price FROM bid WHERE auction % 123 = 0
