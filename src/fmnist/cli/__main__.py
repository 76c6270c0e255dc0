from fmnist.cli import main

main()
