"""Projections run by Django: read models kept up to date from the global log."""
