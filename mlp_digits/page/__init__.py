"""A digit as the network sees it: image files converted as MNIST was made, and the page."""
