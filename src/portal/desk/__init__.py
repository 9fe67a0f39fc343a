"""The front desk: the client record as the hub, new clients, finding clients."""
