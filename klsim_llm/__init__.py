"""klsim_llm: torch twins of the klsim objectives, KL estimators, tabular-LM oracles and the estimator audit.

Importing this package needs torch.  The objectives are pure functions of tensors; they are named in
:mod:`klsim_llm.registry`, where each entry names its exact numpy twin in :mod:`klsim.sequence`.
"""

__version__ = "0.1.0"
