"""Celery tasks of the reviews app: thin wrappers that call one service each."""

from __future__ import annotations
