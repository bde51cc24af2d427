"""Synthetic tasks with checkable answers, used to train and evaluate the dLLM zoo models."""
