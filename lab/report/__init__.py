"""Run directories and what is written into them (reports come in their own modules)."""
