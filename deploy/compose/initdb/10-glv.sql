-- Generated from the service registry (glv_schemas.topics) by `make deploy-files`;
-- edit tools/glv_devtools/deploy_files.py, not this file.
-- One role and one database per GLV service, each database owned by its role (the
-- services apply their own migrations at start). Runs once, when the postgres
-- container initialises an empty data directory, as the superuser, through psql.
-- Passwords come from the container's environment (GLV_<SERVICE>_DB_PASSWORD, set
-- from deploy/compose/.env); the defaults are for development only. psql's \getenv
-- leaves the variable unchanged when the environment variable is unset or empty.

\set ON_ERROR_STOP on

\set ticketing_password glv_ticketing
\set scheduler_password glv_scheduler
\set notifier_password glv_notifier
\set archive_password glv_archive
\getenv ticketing_password GLV_TICKETING_DB_PASSWORD
\getenv scheduler_password GLV_SCHEDULER_DB_PASSWORD
\getenv notifier_password GLV_NOTIFIER_DB_PASSWORD
\getenv archive_password GLV_ARCHIVE_DB_PASSWORD

CREATE ROLE glv_ticketing LOGIN PASSWORD :'ticketing_password';
CREATE ROLE glv_scheduler LOGIN PASSWORD :'scheduler_password';
CREATE ROLE glv_notifier LOGIN PASSWORD :'notifier_password';
CREATE ROLE glv_archive LOGIN PASSWORD :'archive_password';

CREATE DATABASE glv_ticketing OWNER glv_ticketing;
CREATE DATABASE glv_scheduler OWNER glv_scheduler;
CREATE DATABASE glv_notifier OWNER glv_notifier;
CREATE DATABASE glv_archive OWNER glv_archive;

-- Each service reaches its own database only (the owner keeps its rights).
REVOKE ALL ON DATABASE glv_ticketing FROM PUBLIC;
REVOKE ALL ON DATABASE glv_scheduler FROM PUBLIC;
REVOKE ALL ON DATABASE glv_notifier FROM PUBLIC;
REVOKE ALL ON DATABASE glv_archive FROM PUBLIC;

-- The scheduler's no-overlap constraints (EXCLUDE USING gist on office + time range).
\connect glv_scheduler
CREATE EXTENSION IF NOT EXISTS btree_gist;
