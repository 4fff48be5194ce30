"""Perceptual losses, style transfer and super-resolution: one file per paper.

    perceptual  VGG features of the convnet zoo, Gram matrix, style / content / feature losses,
                total variation (Gatys et al. 2015; Johnson et al. 2016; Ledig et al. 2016)
    gatys       Gatys et al. 2015/2016: style transfer by optimising the image
    johnson     Johnson et al. 2016: the feed-forward image transformation network
    srgan       Ledig et al. 2016: SRResNet, its discriminator, sub-pixel shuffle, the SRGAN losses
"""
