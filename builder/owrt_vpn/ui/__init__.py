"""Terminal presentation shared by the commands (state, batch views)."""
