"""The citation shared by the RLCF family (a private module: no plugin, no torch)."""

PAPER = ("Zhao, Wang, Zhu, Yang, Test-Time Adaptation with CLIP Reward for Zero-Shot Generalization "
         "in Vision-Language Models (ICLR 2024)")
