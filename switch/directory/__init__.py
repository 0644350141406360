"""The alias directory: who holds the account behind a phone number, e-mail, handle or key."""
