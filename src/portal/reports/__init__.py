"""Accountant reports: payments, package liability, revenue, fees, the journal."""
