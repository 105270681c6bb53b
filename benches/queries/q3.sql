-- Nexmark q3, local item suggestion: people in some states selling in
-- category 10 (a join of two streams).
-- tables: auction, person
-- streaming:
SELECT p.name, p.city, p.state, a.id
FROM auction AS a JOIN person AS p ON a.seller = p.id
WHERE a.category = 10 AND (p.state = 'or' OR p.state = 'id' OR p.state = 'ca')
