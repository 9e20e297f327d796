"""The results store: the only package that imports SQLAlchemy."""
