from silverlining.cli import main

main()
