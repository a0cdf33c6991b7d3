"""Rasa custom actions (rasa-sdk). Stateless: side effects are commands the hub carries out.

This package runs in the Rasa virtual environment (Python 3.10); keep it compatible.
"""
