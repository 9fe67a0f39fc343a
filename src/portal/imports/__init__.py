"""Moving a chain in: files of clients, balances, appointments and therapists."""
