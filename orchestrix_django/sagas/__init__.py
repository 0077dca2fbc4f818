"""Sagas run by Django: orchestrated steps, compensations, deadlines and process managers."""
