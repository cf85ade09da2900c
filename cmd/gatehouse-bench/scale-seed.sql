-- Seeds a Gatehouse PostgreSQL database for the scale runs of issue 16
-- (README, Performance): 1,000,000 users and 10,000,000 live tokens
-- (4 of 5 access tokens, 1 of 5 refresh tokens, over 100 clients and every
-- user), each token a copy of the form and sealed session of one the server
-- issued. Run gatehouse-bench once against the database first (any token
-- scenario, so that there is a token to copy), stop the server, then:
--   psql -d DATABASE -f cmd/gatehouse-bench/scale-seed.sql
-- It takes ~10 minutes on two cores and ~10 GB of disk. The users' hash is
-- well-formed but matches no password: they exist to be looked past.
\timing on
SET synchronous_commit = off;
INSERT INTO users (id, email, phone_number, email_verified, phone_verified, password_hash, inactive, doc, version, created_at, updated_at)
SELECT 'scale-' || i, 'scale-' || i || '@example.com', '', true, false,
       '$argon2id$v=19$m=19456,t=2,p=1$c2NhbGVzYWx0c2NhbGVzYWx0$Qm9ndXNoYXNoQm9ndXNoYXNoQm9ndXNoYXNoQm9ndXM',
       false, convert_to('{"resourceType":"User","id":"scale-' || i || '","email":"scale-' || i || '@example.com"}', 'UTF8'), 1, now(), now()
FROM generate_series(1, 1000000) AS i;
INSERT INTO oauth_requests (kind, signature, request_id, client_id, subject, requested_at, expires_at, active, scopes, granted_scopes, audience, granted_audience, form, session)
SELECT CASE WHEN i % 5 = 0 THEN 'refresh_token' ELSE 'access_token' END,
       md5(i::text) || md5((-i)::text), md5((i * 7)::text), 'scale-client-' || (i % 100), 'scale-' || (i % 1000000 + 1),
       now(), now() + interval '30 days', true, '["openid","offline_access"]', '["openid","offline_access"]', '[]', '[]', t.form, t.session
FROM generate_series(1, 10000000) AS i,
     (SELECT form, session FROM oauth_requests WHERE kind = 'access_token' LIMIT 1) AS t;
VACUUM ANALYZE users;
VACUUM ANALYZE oauth_requests;
SELECT pg_size_pretty(pg_database_size(current_database()));
