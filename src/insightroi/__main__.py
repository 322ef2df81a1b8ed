from insightroi.cli import main

main()
