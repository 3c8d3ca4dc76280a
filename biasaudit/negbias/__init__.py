"""Negative bias in yes/no answering (docs/methods.md §4)."""

from biasaudit.negbias.content_free import ContentFreeYesNoPrior, YesNoPromptSet

__all__ = ["ContentFreeYesNoPrior", "YesNoPromptSet"]
