"""HTTP handlers for staff, one module per resource; ``routes`` registers them all."""
