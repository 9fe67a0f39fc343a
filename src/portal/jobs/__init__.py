"""Scheduled and long work: the job catalogue, its runs, the worker and the jobs page."""
