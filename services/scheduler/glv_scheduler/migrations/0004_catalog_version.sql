-- The catalog's version: every statement that changes a catalog table (service types,
-- offices, officers, cuti bersama) gives it a new value, in the same transaction. A running
-- scheduler reads this one row per batch and reloads the catalog only when it changed.
CREATE TABLE IF NOT EXISTS catalog_version (
    id      int    PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    version uuid NOT NULL   -- random: two databases never share one
);
INSERT INTO catalog_version (id, version) VALUES (1, gen_random_uuid()) ON CONFLICT DO NOTHING;

CREATE OR REPLACE FUNCTION catalog_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE catalog_version SET version = gen_random_uuid() WHERE id = 1;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS service_type_changed ON service_type;
CREATE TRIGGER service_type_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON service_type
    FOR EACH STATEMENT EXECUTE FUNCTION catalog_changed();
DROP TRIGGER IF EXISTS office_changed ON office;
CREATE TRIGGER office_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON office
    FOR EACH STATEMENT EXECUTE FUNCTION catalog_changed();
DROP TRIGGER IF EXISTS officer_changed ON officer;
CREATE TRIGGER officer_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON officer
    FOR EACH STATEMENT EXECUTE FUNCTION catalog_changed();
DROP TRIGGER IF EXISTS collective_leave_changed ON collective_leave;
CREATE TRIGGER collective_leave_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON collective_leave
    FOR EACH STATEMENT EXECUTE FUNCTION catalog_changed();
