Nested loops in Brainfuck: 100 x 100 times build a cell of 100 and move it
back and forth; then print OK and a newline
++++++++++[>++++++++++<-]>
[
  >++++++++++[>++++++++++<-]>
  [
    >++++++++++[>++++++++++<-]>
    [->+<]
    >[-<+>]<
    [-]
    <<-
  ]
  <<-
]
++++++++[>++++++++++<-]>-.----.[-]++++++++++.
