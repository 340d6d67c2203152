"""The site file: its model, validation rules, loading and edits."""
