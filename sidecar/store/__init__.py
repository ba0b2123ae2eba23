"""All SQL lives here: the database, its migrations and small repositories over it."""
