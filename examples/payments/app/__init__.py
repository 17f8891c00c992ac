"""Conveyor Payments: the card payments the shop's checkout asks for."""
