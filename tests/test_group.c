#include <criterion/criterion.h>
Test(group, placeholder) {}
