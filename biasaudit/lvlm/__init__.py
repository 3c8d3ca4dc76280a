"""Probes and audits for vision-language models (image + text)."""
