"""tinyprop: minimal-effort backpropagation (meProp) on the CPU, from scratch.

Sun, Ren, Ma, Wang, "meProp: Sparsified Back Propagation for Accelerated Deep Learning
with Reduced Overfitting", ICML 2017; Sun et al., "Training Simplification and Model
Simplification for Deep Learning: A Minimal Effort Back Propagation Method", TKDE 2018.
"""
__version__ = "0.1.0"
