"""Self-supervised representation learning: one file per paper (SimCLR, MoCo, BYOL, SimSiam, SwAV,
Barlow Twins), the projection and prediction heads they share (`heads`), the paper's view
augmentations (`views`) and a small encoder for the offline shapes (`encoders`)."""
