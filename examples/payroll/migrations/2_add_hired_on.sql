-- Expand only: the version before this one keeps working while both serve.
ALTER TABLE employee ADD COLUMN hired_on TEXT;
