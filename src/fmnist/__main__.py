"""`python -m fmnist …` is the `fmnist` command; torchrun starts it so: `torchrun … -m fmnist train …`."""

from fmnist.cli import main

if __name__ == "__main__":
    main()
