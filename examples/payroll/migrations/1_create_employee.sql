-- Portable SQL: the same file runs on the module's own SQLite and on PostgreSQL.
CREATE TABLE employee (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    monthly_salary DOUBLE PRECISION NOT NULL
);

-- The three seeded employees, whose daily wages are 1000, 800 and 600.
INSERT INTO employee (id, name, monthly_salary) VALUES
    (1, 'Zhang Wei', 21750.0),
    (2, 'Li Na', 17400.0),
    (3, 'Wang Fang', 13050.0);
