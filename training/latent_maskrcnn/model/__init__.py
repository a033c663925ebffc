"""The network and its file format: Latent-MaskRCNN on torchvision's MaskRCNN (backbone with FPN,
prior and posterior encoder, latent injection, the batched decoding of K samples with its CPU
kernels, post-processing) and the `.safetensors` checkpoints. Imports torch, torchvision and
safetensors, nothing else of the package.
"""
