-- One PostgreSQL instance, one database per service (each service owns its data; see DESIGN.md §4).
-- Runs once, when the postgres volume is first initialised, as the POSTGRES_USER (leadrelay).
CREATE DATABASE intake;
CREATE DATABASE scoring;
CREATE DATABASE router;
CREATE DATABASE sla_monitor;
